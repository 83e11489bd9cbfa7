"""Running jobs: process, thread and Ray backends, the resumable job runner and Ray cluster set-up."""

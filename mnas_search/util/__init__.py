"""Leaf utilities with no project imports above them: atomic file I/O, interrupts, progress, statistics, figures."""

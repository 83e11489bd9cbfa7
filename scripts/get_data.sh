#!/usr/bin/env bash
# Makes Fashion-MNIST available offline: the Debian package ships the standard IDX files.
# Without apt (or root), the loader falls back to the Keras cache, then to a download.
set -u
if dpkg -s dataset-fashion-mnist >/dev/null 2>&1; then
  echo "Fashion-MNIST: installed ($(dpkg -L dataset-fashion-mnist | grep -m1 'train-images'))"
  exit 0
fi
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "Fashion-MNIST: installing the Debian package dataset-fashion-mnist"
  apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1; }
fi
if dpkg -s dataset-fashion-mnist >/dev/null 2>&1; then
  echo "Fashion-MNIST: installed"
else
  echo "Fashion-MNIST: the Debian package could not be installed; the loader will try the Keras cache" \
       "(~/.keras/datasets/fashion-mnist) and then a download"
fi

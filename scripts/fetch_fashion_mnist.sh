#!/usr/bin/env bash
# Fetch Fashion-MNIST from Debian's dataset-fashion-mnist package into DEST (default: data),
# without root: `apt-get download` + `dpkg-deb -x`. Leaves DEST/fashion-mnist/*-ubyte.gz.
set -euo pipefail
dest=${1:-data}
out="$dest/fashion-mnist"
files=(train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz)
have=1
for f in "${files[@]}"; do [ -s "$out/$f" ] || have=0; done
if [ $have = 1 ]; then echo "Fashion-MNIST already in $out"; exit 0; fi
sys=/usr/share/datasets/fashion-mnist
if [ -s "$sys/${files[0]}" ]; then
  mkdir -p "$out"; for f in "${files[@]}"; do cp "$sys/$f" "$out/$f"; done
  echo "Fashion-MNIST copied from $sys to $out"; exit 0
fi
command -v apt-get >/dev/null || { echo "apt-get not found: install Debian's dataset-fashion-mnist package, or put the four IDX .gz files in $out" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd_dl() { (cd "$work" && apt-get "$@" download dataset-fashion-mnist) >/dev/null 2>"$work/err"; }
if ! cd_dl; then
  # No package lists yet (fresh machine): fetch them into a private folder, which needs no root.
  lists="$work/lists"; mkdir -p "$lists/partial"
  opts=(-o "Dir::State::Lists=$lists" -o Debug::NoLocking=1)
  apt-get "${opts[@]}" update >/dev/null 2>>"$work/err" || true
  cd_dl "${opts[@]}" || { cat "$work/err" >&2; echo "could not download dataset-fashion-mnist with apt-get" >&2; exit 1; }
fi
dpkg-deb -x "$work"/dataset-fashion-mnist_*.deb "$work/x"
mkdir -p "$out"
for f in "${files[@]}"; do cp "$work/x$sys/$f" "$out/$f"; done
cp "$work/x/usr/share/doc/dataset-fashion-mnist/copyright" "$out/COPYRIGHT" 2>/dev/null || true
echo "Fashion-MNIST unpacked into $out"

#!/usr/bin/env bash
# python/ci.sh: builds the Python package (python/) into a virtualenv and
# runs its tests (python/tests), from any directory.
#
# The virtualenv, target/python-venv at the repository's root, is made when
# missing and reused when present (its tools are reinstalled only when the
# pins below change). The package builds with the venv's maturin (`pip
# install --no-build-isolation`) in Cargo's dev profile, debug assertions
# and overflow checks on ($KVM_PYTHON_PROFILE chooses another: release is
# what a plain `pip install ./python` builds), into target/python: not the
# library's own target/debug, where its build of the library (without the
# C API) would replace the library's `libkvm.rlib` (a crate that is also a
# cdylib gets no hash in its file names) and break the next `cargo test`.
#
# The tests compare with the `vmcore` tool and read the sample dumps of
# `cargo run --example demo` (target/samples): both are built first, and
# the tests fail rather than skip without them (KVM_PYTHON_STRICT=1).
#
# Needs python3 (3.9 or later, with its venv and ensurepip modules: Debian's
# python3-venv) and cargo. Prints the time it took, also on failure.
set -euo pipefail

MATURIN_VERSION=1.16.0
# pytest 8.4 is the last to run on Python 3.9, the oldest the package takes.
PYTEST_VERSION=8.4.2

start=$SECONDS
outcome=failed
trap 'echo "python/ci.sh: $outcome in $((SECONDS - start)) s" >&2' EXIT
fail() {
  echo "python/ci.sh: $*" >&2
  exit 1
}

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
venv=$root/target/python-venv
python=${PYTHON:-python3}

command -v "$python" >/dev/null || fail "$python is required (Python 3.9 or later)"
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 9))' ||
  fail "Python 3.9 or later is required; $python is $("$python" -V 2>&1)"
command -v cargo >/dev/null || fail "cargo is required (the Rust toolchain, 1.87 or later)"

# The virtualenv: made when missing, or when its interpreter is gone (the
# Python it was made from was removed or upgraded).
if ! "$venv/bin/python" -c '' 2>/dev/null; then
  "$python" -c 'import venv, ensurepip' 2>/dev/null ||
    fail "$python lacks the venv or ensurepip module (Debian: apt-get install python3-venv)"
  rm -rf "$venv"
  echo "python/ci.sh: creating $venv" >&2
  "$python" -m venv "$venv" || fail "$python -m venv $venv failed"
fi
pins="maturin==$MATURIN_VERSION pytest==$PYTEST_VERSION"
if [ "$(cat "$venv/.pins" 2>/dev/null)" != "$pins" ]; then
  # shellcheck disable=SC2086 # the pins are words
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check $pins ||
    fail "could not install $pins into $venv with pip"
  echo "$pins" >"$venv/.pins"
fi

# What the tests compare with: the vmcore tool and the demo's sample dumps.
cargo build --quiet --locked -p vmcore || fail "cargo build -p vmcore failed"
log=$root/target/python-demo.log
cargo run --quiet --locked --example demo >"$log" 2>&1 ||
  { cat "$log" >&2; fail "cargo run --example demo failed"; }

# The package, built by the venv's maturin, which its build backend runs
# from PATH.
export PATH="$venv/bin:$PATH" CARGO_TARGET_DIR="$root/target/python"
# --locked: python/Cargo.lock as committed (after a change to the library's
# dependencies, `cargo check --manifest-path python/Cargo.toml` updates it).
export MATURIN_PEP517_ARGS="--locked --profile ${KVM_PYTHON_PROFILE:-dev}"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  --no-build-isolation --force-reinstall --no-deps ./python ||
  fail "pip install ./python failed"

KVM_PYTHON_STRICT=1 "$venv/bin/python" -m pytest -q -p no:cacheprovider python/tests
outcome=passed

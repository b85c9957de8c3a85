#!/usr/bin/env bash
# Runs every test on a Debian or Ubuntu machine, installing first what the black-box tests
# drive and is not installed yet: kcat, Debian's zookeeper (zkCli.sh, with a Java runtime) and
# zookeeper-bin (the cli_mt C client), fio (perf/ scripts), pinned Python clients, and a
# virtualenv (target/quix-venv) with quixstreams, whose confluent-kafka pin differs. Uses
# sudo when not root. Extra arguments go to `cargo test --workspace --no-fail-fast`, e.g.
# `tests/run.sh -- listener` runs only the tests whose names contain "listener".
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(kcat fio zookeeper zookeeper-bin)
PYTHON_CLIENTS=(confluent-kafka==2.16.1 kafka-python==3.0.12 aiokafka==0.14.0 kazoo==2.11.0)

as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  else
    sudo "$@"
  fi
}

installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

missing_apt=()
for package in "${APT_PACKAGES[@]}"; do
  installed "$package" || missing_apt+=("$package")
done
if ! python3 -m pip --version >/dev/null 2>&1; then
  missing_apt+=(python3-pip)
fi
if ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
  missing_apt+=(python3-venv)
fi
if [ "${#missing_apt[@]}" -gt 0 ]; then
  echo "installing ${missing_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing_apt[@]}" >/dev/null
fi

# Each pinned client at its version, else installed: for root as CI always did, for anyone
# else in their user site (pip's --user) or their virtualenv. A Python that its distribution
# manages (PEP 668: Debian 12, Ubuntu 23.04 and later) takes them only with
# --break-system-packages.
missing_python=()
for pinned in "${PYTHON_CLIENTS[@]}"; do
  name=${pinned%%==*}
  version=${pinned##*==}
  have=$(python3 -c 'import importlib.metadata as m, sys; print(m.version(sys.argv[1]))' "$name" 2>/dev/null || true)
  [ "$have" = "$version" ] || missing_python+=("$pinned")
done
if [ "${#missing_python[@]}" -gt 0 ]; then
  echo "installing ${missing_python[*]}"
  pip_args=(--quiet --disable-pip-version-check)
  if [ "$(id -u)" -eq 0 ]; then
    pip_args+=(--root-user-action=ignore)
  elif [ "$(python3 -c 'import sys; print(int(sys.prefix != sys.base_prefix))')" = 0 ]; then
    pip_args+=(--user) # not inside a virtualenv, which takes them as they are
  fi
  stdlib=$(python3 -c 'import sysconfig; print(sysconfig.get_path("stdlib"))')
  if [ -e "$stdlib/EXTERNALLY-MANAGED" ]; then
    pip_args+=(--break-system-packages)
  fi
  python3 -m pip install "${pip_args[@]}" "${missing_python[@]}"
fi

# quixstreams pins confluent-kafka below the version the other tests use: its own virtualenv.
QUIX_PINNED=3.28.1
quix_python=target/quix-venv/bin/python
if [ "$("$quix_python" -c 'import quixstreams; print(quixstreams.__version__)' 2>/dev/null)" != "$QUIX_PINNED" ]; then
  echo "installing quixstreams==$QUIX_PINNED in target/quix-venv"
  rm -rf target/quix-venv
  python3 -m venv target/quix-venv
  target/quix-venv/bin/python -m pip install --quiet --disable-pip-version-check "quixstreams==$QUIX_PINNED"
fi
export BRAID_QUIX_PYTHON="$PWD/$quix_python"

kcat -V | head -1
python3 -c 'import confluent_kafka, kafka, aiokafka; print("confluent-kafka", confluent_kafka.version()[0], "kafka-python", kafka.__version__, "aiokafka", aiokafka.__version__)'
python3 -c 'import kazoo; print("kazoo", kazoo.__version__)'
ls /usr/share/zookeeper/bin/zkCli.sh /usr/lib/zookeeper/bin/cli_mt

exec cargo test --workspace --no-fail-fast "$@"

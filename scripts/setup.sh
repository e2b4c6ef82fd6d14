#!/usr/bin/env bash
# Sets up a fresh Debian/Ubuntu machine (as root) to build vlbridge and run it on a
# Vulkan adapter. Without a GPU it installs Mesa's software Vulkan driver (lavapipe).
#
# Debian 12's stock Mesa 22.3 lavapipe silently stops any loop after ~65,535
# iterations per invocation (wrong results, no error); Mesa from bookworm-backports
# is correct, so on bookworm we add that suite, reusing the mirror URI the machine
# already has configured. `tests/driver.rs` detects the defect if it ever returns.
set -euo pipefail

# libegl1, libegl-mesa0 and libgl1-mesa-dri give the GL backend (llvmpipe through EGL).
need_pkgs=(libvulkan1 mesa-vulkan-drivers libegl1 libegl-mesa0 libgl1-mesa-dri pkg-config)
sudo_() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
export DEBIAN_FRONTEND=noninteractive

codename=""
[ -r /etc/os-release ] && codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")

backports=()
if [ "$codename" = "bookworm" ]; then
  list=/etc/apt/sources.list.d/vlbridge-backports.sources
  if [ ! -f "$list" ]; then
    # Reuse the first Debian (non-security) mirror URI already configured.
    uri=""
    for f in /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list.d/*.sources; do
      [ -r "$f" ] || continue
      uri=$(awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i !~ /security/) { print $i; exit } }' "$f")
      [ -n "$uri" ] && break
    done
    if [ -z "$uri" ] && [ -r /etc/apt/sources.list ]; then
      uri=$(awk '$1 == "deb" && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' /etc/apt/sources.list)
    fi
    if [ -z "$uri" ]; then
      echo "setup: no Debian mirror URI found in the apt sources; cannot add bookworm-backports" >&2
      exit 1
    fi
    printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$uri" | sudo_ tee "$list" >/dev/null
  fi
  backports=(-t bookworm-backports)
fi

if ! dpkg -s "${need_pkgs[@]}" >/dev/null 2>&1 || { [ ${#backports[@]} -gt 0 ] && dpkg --compare-versions "$(dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null || echo 0)" lt 23; }; then
  sudo_ apt-get update -qq
  sudo_ apt-get install -y -qq --no-install-recommends "${backports[@]}" "${need_pkgs[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null && [ -x "$HOME/.cargo/bin/cargo" ]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v cargo >/dev/null; then
  # Debian's packaged Rust is too old for edition 2024: use rustup's stable toolchain.
  sudo_ apt-get install -y -qq --no-install-recommends curl ca-certificates build-essential >/dev/null
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal -c clippy -c rustfmt
  echo "setup: Rust installed under ~/.cargo; open a new shell or run: . ~/.cargo/env" >&2
fi

# The browser tests (scripts/browser_tests.sh): Chromium and its driver, the wasm32 target, and
# wasm-bindgen's test runner at the version web/Cargo.toml pins (the runner must match it).
browser_pkgs=(chromium chromium-driver)
if ! dpkg -s "${browser_pkgs[@]}" >/dev/null 2>&1; then
  sudo_ apt-get update -qq
  sudo_ apt-get install -y -qq --no-install-recommends "${browser_pkgs[@]}" >/dev/null
fi
if command -v rustup >/dev/null; then
  rustup target add wasm32-unknown-unknown >/dev/null 2>&1
fi
here="$(cd "$(dirname "$0")/.." && pwd)"
wanted=$(sed -n 's/^wasm-bindgen = "=\(.*\)"/\1/p' "$here/web/Cargo.toml")
if ! wasm-bindgen-test-runner --version 2>/dev/null | grep -qF "$wanted"; then
  cargo install -q wasm-bindgen-cli --version "$wanted"
fi
echo "setup: mesa-vulkan-drivers $(dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null || echo '?'), $(chromium --version 2>/dev/null || echo 'no chromium'), wasm-bindgen $wanted"

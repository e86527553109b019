#!/usr/bin/env bash
# Builds the Debian package of fwd: target/debian/fwd_VERSION-1_ARCH.deb (path printed last).
#   scripts/package.sh [--skip-build]
# The binary, fwd.service, /etc/fwd/appliance.toml and its rules (conffiles), fwd(8) and one
# page per subcommand plus fwd.toml(5), bash/zsh/fish completions; what goes where is
# [package.metadata.deb] in crates/fwd/Cargo.toml. Installs cargo-deb when it is missing
# (a few minutes, once: it stays in ~/.cargo/bin).
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO_DEB_VERSION=3.8.0
target=${CARGO_TARGET_DIR:-target}

if ! cargo deb --version >/dev/null 2>&1; then
    echo "installing cargo-deb $CARGO_DEB_VERSION (once)" >&2
    cargo install cargo-deb --locked --version "$CARGO_DEB_VERSION" >&2
fi
if [ "${1:-}" != --skip-build ]; then
    cargo build --release -q -p fwd -p fwd-gen
fi
# the generated man pages and completions, where the package's assets expect them
rm -rf "$target/release/gen"
"$target/release/fwd-gen" "$target/release/gen"
# --strip: the release profile keeps line tables for perf; the package need not carry them
cargo deb -p fwd --no-build --strip -q -o "$target/debian/" | tail -1

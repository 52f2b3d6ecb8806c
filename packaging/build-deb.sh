#!/usr/bin/env bash
# Build the Debian package: target/debian/appliance_<version>-1_<arch>.deb
#
#   packaging/build-deb.sh            # build the release binary, then the .deb
#   packaging/build-deb.sh --no-build # package the existing release binary
#
# Steps: install cargo-deb (pinned) if it is missing; `cargo build --release
# --locked`; generate the shell completions and the man page from the built
# binary into target/pkg/ (cargo-deb cannot run the binary itself); then
# `cargo deb --no-build`. The last line printed is the .deb's path.
#
# Reproducible: SOURCE_DATE_EPOCH defaults to the last commit's time, so file
# times inside the .deb do not depend on when it was built.
set -euo pipefail

CARGO_DEB_VERSION=3.8.0
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

build=1
for arg in "$@"; do
	case "$arg" in
		--no-build) build=0 ;;
		*) echo "usage: $0 [--no-build]" >&2; exit 2 ;;
	esac
done

# cargo-deb: from crates.io, built from source (about 1 minute on 2 cores).
if ! cargo deb --version 2>/dev/null | grep -qx "cargo-deb $CARGO_DEB_VERSION"; then
	echo "installing cargo-deb $CARGO_DEB_VERSION" >&2
	cargo install cargo-deb --version "$CARGO_DEB_VERSION" --locked
fi

if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
	SOURCE_DATE_EPOCH="$(git log -1 --format=%ct 2>/dev/null || echo 0)"
	export SOURCE_DATE_EPOCH
fi

if [ "$build" = 1 ]; then
	cargo build --release --locked --bin appliance
fi

# Where cargo put the binary (honours CARGO_TARGET_DIR and .cargo/config).
target_dir="$(cargo metadata --format-version 1 --no-deps --locked |
	sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
bin="${target_dir:-$root/target}/release/appliance"
[ -x "$bin" ] || { echo "error: $bin not found: build it first (cargo build --release)" >&2; exit 1; }

# Generated assets: the paths listed in [package.metadata.deb].assets, always
# under the crate's own target/pkg/ (a plain path for cargo-deb).
pkg="$root/target/pkg"
rm -rf "$pkg"
mkdir -p "$pkg"
"$bin" completions bash > "$pkg/appliance.bash"
"$bin" completions zsh > "$pkg/_appliance"
"$bin" completions fish > "$pkg/appliance.fish"
"$bin" man > "$pkg/appliance.1"
for f in appliance.bash _appliance appliance.fish appliance.1; do
	[ -s "$pkg/$f" ] || { echo "error: generated $pkg/$f is empty" >&2; exit 1; }
done

# cargo deb prints the path of the .deb it wrote on stdout.
deb="$(cargo deb --no-build --locked | tail -n 1)"
[ -f "$deb" ] || { echo "error: cargo deb did not report a .deb (got: $deb)" >&2; exit 1; }
echo "$deb"

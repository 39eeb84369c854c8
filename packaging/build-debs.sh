#!/bin/sh
# Builds the Debian packages edge-node (edge-node, plant-sim) and host-app from binaries
# cargo has already built. Usage:
#   packaging/build-debs.sh [--target-dir DIR] [--profile debug|release] [--arch ARCH]
#                           [--triple TRIPLE] [--out DIR]
# Binaries are taken from DIR/PROFILE (or DIR/TRIPLE/PROFILE with --triple); the
# architecture defaults to `dpkg --print-architecture`. Packages go to --out
# (default DIR/debian). See packaging/README.md.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
target_dir=${CARGO_TARGET_DIR:-$root/target}
profile=release
arch=""
triple=""
out=""

die() { echo "build-debs.sh: $*" >&2; exit 2; }

while [ $# -gt 0 ]; do
    case "$1" in
        --target-dir) [ $# -ge 2 ] || die "--target-dir needs a value"; target_dir=$2; shift 2 ;;
        --profile) [ $# -ge 2 ] || die "--profile needs a value"; profile=$2; shift 2 ;;
        --arch) [ $# -ge 2 ] || die "--arch needs a value"; arch=$2; shift 2 ;;
        --triple) [ $# -ge 2 ] || die "--triple needs a value"; triple=$2; shift 2 ;;
        --out) [ $# -ge 2 ] || die "--out needs a value"; out=$2; shift 2 ;;
        -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
        *) die "unknown argument $1" ;;
    esac
done
case "$profile" in debug|release) ;; *) die "--profile must be debug or release, not $profile" ;; esac
[ -n "$arch" ] || arch=$(dpkg --print-architecture)
bin_dir=$target_dir/${triple:+$triple/}$profile
[ -n "$out" ] || out=$target_dir/debian
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root/Cargo.toml" | head -n 1)
[ -n "$version" ] || die "no workspace version in $root/Cargo.toml"

for b in edge-node plant-sim host-app; do
    [ -x "$bin_dir/$b" ] || die "$bin_dir/$b is missing: build it first (cargo build --bins${triple:+ --target $triple})"
done
mkdir -p "$out"

# build PACKAGE DESCRIPTION BINARIES...: one package from the shared layout.
build() {
    pkg=$1; summary=$2; shift 2
    stage=$(mktemp -d)
    trap 'rm -rf "$stage"' EXIT
    chmod 0755 "$stage"
    install -d -m 0755 "$stage/DEBIAN" "$stage/usr/bin" "$stage/lib/systemd/system" \
        "$stage/etc/$pkg" "$stage/usr/share/doc/$pkg/examples"
    for b in "$@"; do
        install -m 0755 "$bin_dir/$b" "$stage/usr/bin/$b"
        # Debian ships stripped binaries; STRIP names the cross tool (aarch64-linux-gnu-strip).
        "${STRIP:-strip}" --strip-unneeded --remove-section=.comment --remove-section=.note "$stage/usr/bin/$b"
    done
    install -m 0644 "$root/systemd/$pkg.service" "$stage/lib/systemd/system/$pkg.service"
    # Configuration: readable by root and (group, set in postinst) the service only.
    install -m 0640 "$root/config/$pkg.example.toml" "$stage/etc/$pkg/$pkg.toml"
    install -m 0644 "$root/README.md" "$stage/usr/share/doc/$pkg/README.md"
    install -m 0644 "$root/config/$pkg.example.toml" "$stage/usr/share/doc/$pkg/examples/"
    case "$pkg" in
        edge-node)
            # The example configuration names its tag file relative to itself.
            install -m 0640 "$root/config/modbus-tags.example.csv" "$stage/etc/$pkg/modbus-tags.example.csv"
            install -m 0644 "$root/config/plant-sim.example.toml" "$root/config/store.example.toml" \
                "$stage/usr/share/doc/$pkg/examples/"
            ;;
    esac
    cat > "$stage/usr/share/doc/$pkg/copyright" <<COPYRIGHT
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: sparkplug-edge

Files: *
Copyright: the sparkplug-edge authors
License: Apache-2.0
 On Debian systems the full text is in /usr/share/common-licenses/Apache-2.0.
COPYRIGHT
    printf '%s (%s) unstable; urgency=medium\n\n  * Release %s.\n\n -- sparkplug-edge maintainers <maintainers@example.invalid>  %s\n' \
        "$pkg" "$version" "$version" "$(date -R -u -d @"${SOURCE_DATE_EPOCH:-0}")" |
        gzip -9n > "$stage/usr/share/doc/$pkg/changelog.gz"
    chmod 0644 "$stage/usr/share/doc/$pkg/changelog.gz"
    chmod 0644 "$stage/usr/share/doc/$pkg/copyright"
    (cd "$stage" && find etc -type f | sed 's#^#/#' | sort) > "$stage/DEBIAN/conffiles"
    chmod 0644 "$stage/DEBIAN/conffiles"
    for script in postinst prerm postrm; do
        sed "s/@PKG@/$pkg/g" "$here/debian/$script" > "$stage/DEBIAN/$script"
        chmod 0755 "$stage/DEBIAN/$script"
    done
    size=$(du -k -s "$stage" | cut -f1)
    cat > "$stage/DEBIAN/control" <<CONTROL
Package: $pkg
Version: $version
Architecture: $arch
Maintainer: sparkplug-edge maintainers <maintainers@example.invalid>
Installed-Size: $size
Depends: adduser, libc6, procps
Section: net
Priority: optional
Homepage: https://example.invalid/sparkplug-edge
Description: $summary
 Part of sparkplug-edge, a Sparkplug B 3.0 edge node and host application.
 Runs as the systemd service $pkg.service under its own system user.
CONTROL
    chmod 0644 "$stage/DEBIAN/control"
    deb=$out/${pkg}_${version}_${arch}.deb
    dpkg-deb --root-owner-group -Zgzip --build "$stage" "$deb" >/dev/null
    rm -rf "$stage"
    trap - EXIT
    echo "$deb"
}

build edge-node "Sparkplug B edge node for Modbus devices" edge-node plant-sim
build host-app "Sparkplug B host application with embedded MQTT broker" host-app

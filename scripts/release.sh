#!/usr/bin/env bash
# Build a kubectl-buildkit release archive and render the krew manifest for it.
#
# Usage: scripts/release.sh VERSION [options]
#   VERSION                  vMAJOR.MINOR.PATCH[-PRE]; must be "v" + Cargo.toml's version
#   --out DIR                where archives and buildkit.yaml go (default: dist)
#   --target TRIPLE          cargo build --target TRIPLE (default: the host); the archive's
#                            os/arch follow the triple
#   --binary PATH            archive this already-built binary instead of running cargo
#                            (with --platform when it is not for the host)
#   --platform OS/ARCH       the platform of --binary (linux|darwin|windows / amd64|arm64)
#   --archive OS/ARCH=FILE   a prebuilt archive for another platform (repeatable; also
#                            $PREBUILT_ARCHIVES, space-separated); archives already in
#                            DIR under their release names count too
#   --render-only            build nothing: render buildkit.yaml from the archives in DIR
#   --partial                leave platforms without an archive out of buildkit.yaml
#                            (for a local test) instead of failing
# Environment: RELEASE_URL (where the archives are downloaded from; default
#   https://github.com/$GITHUB_REPOSITORY/releases/download/VERSION), CARGO (e.g. cross).
# Output: DIR/kubectl-buildkit_VERSION_OS_ARCH.tar.gz (.zip on windows) holding the binary
# and LICENSE, its .sha256, and DIR/buildkit.yaml rendered from plugin.yaml.
# See docs/RELEASING.md.
set -euo pipefail

die() {
  echo "release.sh: error: $*" >&2
  exit 1
}

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[ $# -ge 1 ] || die "usage: scripts/release.sh VERSION [--out DIR] [--target TRIPLE] [--binary PATH --platform OS/ARCH] [--archive OS/ARCH=FILE]... [--render-only] [--partial]"
version="$1"
shift

out="dist"
target=""
binary=""
platform=""
render_only=0
partial=0
archives=()
for a in ${PREBUILT_ARCHIVES:-}; do archives+=("$a"); done
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out="${2:?--out needs a directory}"; shift 2 ;;
    --target) target="${2:?--target needs a target triple}"; shift 2 ;;
    --binary) binary="${2:?--binary needs a path}"; shift 2 ;;
    --platform) platform="${2:?--platform needs OS/ARCH}"; shift 2 ;;
    --archive) archives+=("${2:?--archive needs OS/ARCH=FILE}"); shift 2 ;;
    --render-only) render_only=1; shift ;;
    --partial) partial=1; shift ;;
    *) die "unknown argument $1 (see the usage at the top of scripts/release.sh)" ;;
  esac
done

platforms="linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64 windows/arm64"

# --- the version -------------------------------------------------------------------
[[ "$version" =~ ^v[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$ ]] \
  || die "VERSION $version is not semver with a leading v (like v1.2.3)"
crate_version="$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root/Cargo.toml" | head -n 1)"
[ "$version" = "v$crate_version" ] \
  || die "VERSION $version does not match Cargo.toml's version $crate_version: set version = \"${version#v}\" in Cargo.toml (the binary reports it), or release v$crate_version"

release_url="${RELEASE_URL:-https://github.com/${GITHUB_REPOSITORY:-kubectl-buildkit/kubectl-buildkit}/releases/download/$version}"
release_url="${release_url%/}"

# --- helpers -----------------------------------------------------------------------
ext_of() { case "$1" in windows/*) echo zip ;; *) echo tar.gz ;; esac; }
archive_name() { # OS/ARCH
  local os="${1%/*}" arch="${1#*/}"
  echo "kubectl-buildkit_${version}_${os}_${arch}.$(ext_of "$1")"
}
known_platform() { case " $platforms " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

sha256_of() {
  if command -v sha256sum >/dev/null 2>&1; then
    sha256sum "$1" | cut -d' ' -f1
  elif command -v shasum >/dev/null 2>&1; then
    shasum -a 256 "$1" | cut -d' ' -f1
  else
    die "neither sha256sum nor shasum is installed"
  fi
}

# The os/arch of a Rust target triple.
platform_of_triple() {
  local arch os
  case "$1" in
    x86_64-*) arch=amd64 ;;
    aarch64-*) arch=arm64 ;;
    *) die "target $1: only x86_64 and aarch64 are released" ;;
  esac
  case "$1" in
    *-linux-*) os=linux ;;
    *-apple-darwin) os=darwin ;;
    *-windows-*) os=windows ;;
    *) die "target $1: only linux, darwin and windows are released" ;;
  esac
  echo "$os/$arch"
}

# Pack BINARY (as BIN) and LICENSE, at the archive's top level, into OUT/NAME.
make_archive() { # platform binary
  local plat="$1" bin_src="$2" bin name stage
  bin="kubectl-buildkit"
  case "$plat" in windows/*) bin="kubectl-buildkit.exe" ;; esac
  name="$(archive_name "$plat")"
  stage="$(mktemp -d)"
  cp "$bin_src" "$stage/$bin"
  chmod 755 "$stage/$bin"
  cp "$root/LICENSE" "$stage/LICENSE"
  rm -f "$out/$name"
  case "$name" in
    *.zip)
      if command -v zip >/dev/null 2>&1; then
        (cd "$stage" && zip -q -X "$out_abs/$name" "$bin" LICENSE)
      elif command -v 7z >/dev/null 2>&1; then
        (cd "$stage" && 7z a -tzip -bd "$out_abs/$name" "$bin" LICENSE >/dev/null)
      elif command -v python3 >/dev/null 2>&1; then
        (cd "$stage" && python3 -m zipfile -c "$out_abs/$name" "$bin" LICENSE)
      else
        die "cannot make $name: install zip, 7z or python3"
      fi
      ;;
    # COPYFILE_DISABLE: no macOS ._* metadata files in the archive.
    *) (cd "$stage" && COPYFILE_DISABLE=1 tar -czf "$out_abs/$name" "$bin" LICENSE) ;;
  esac
  rm -rf "$stage"
  echo "$name"
}

mkdir -p "$out"
out_abs="$(cd "$out" && pwd)"

# --- build and archive this platform -------------------------------------------------
if [ "$render_only" = 0 ]; then
  if [ -n "$binary" ]; then
    [ -f "$binary" ] || die "--binary $binary does not exist"
    if [ -z "$platform" ]; then
      platform="$(platform_of_triple "${target:-$(rustc -vV | sed -n 's/^host: //p')}")"
    fi
  else
    [ -z "$platform" ] || die "--platform goes with --binary; to cross-build, pass --target TRIPLE"
    triple="${target:-$(rustc -vV | sed -n 's/^host: //p')}"
    platform="$(platform_of_triple "$triple")"
    cargo_args=(build --release --locked)
    dir="$root/target/release"
    if [ -n "$target" ]; then
      cargo_args+=(--target "$target")
      dir="$root/target/$target/release"
    fi
    echo "release.sh: ${CARGO:-cargo} ${cargo_args[*]}" >&2
    (cd "$root" && "${CARGO:-cargo}" "${cargo_args[@]}")
    binary="$dir/kubectl-buildkit"
    case "$platform" in windows/*) binary="$binary.exe" ;; esac
    [ -f "$binary" ] || die "cargo built no $binary"
  fi
  known_platform "$platform" || die "platform $platform is not one of: $platforms"
  name="$(make_archive "$platform" "$binary")"
  sha256_of "$out/$name" >"$out/$name.sha256"
  echo "release.sh: $out/$name  sha256 $(cat "$out/$name.sha256")" >&2
fi

# --- prebuilt archives for the other platforms ----------------------------------------
for spec in ${archives[@]+"${archives[@]}"}; do
  plat="${spec%%=*}"
  file="${spec#*=}"
  [ "$plat" != "$spec" ] || die "--archive $spec: write OS/ARCH=FILE"
  known_platform "$plat" || die "--archive $spec: $plat is not one of: $platforms"
  [ -f "$file" ] || die "--archive $spec: $file does not exist"
  name="$(archive_name "$plat")"
  if [ "$(cd "$(dirname "$file")" && pwd)/$(basename "$file")" != "$out_abs/$name" ]; then
    cp "$file" "$out/$name"
  fi
done

# --- render the manifest -------------------------------------------------------------
hashes=""
missing=""
for plat in $platforms; do
  name="$(archive_name "$plat")"
  if [ -f "$out/$name" ]; then
    hashes="$hashes ${plat%/*}_${plat#*/}=$(sha256_of "$out/$name")"
  else
    missing="$missing $plat"
  fi
done
[ -n "$hashes" ] || die "no archive for any platform in $out: build one, or pass --archive OS/ARCH=FILE"
if [ -n "$missing" ] && [ "$partial" = 0 ]; then
  die "no archive in $out for:$missing; pass --archive OS/ARCH=FILE for each (or --partial for a manifest without them)"
fi

# Each platform block of plugin.yaml ("  - selector:" up to the next one) is kept with
# its uri and sha256 filled in, or dropped when its archive is missing (--partial).
awk -v version="$version" -v url="$release_url" -v hashes="$hashes" '
  function flush() {
    if (nblock == 0) return
    if (key in sha) { for (i = 1; i <= nblock; i++) print block[i] }
    nblock = 0; key = ""
  }
  BEGIN {
    n = split(hashes, pairs, " ")
    for (i = 1; i <= n; i++) { split(pairs[i], kv, "="); sha[kv[1]] = kv[2] }
    print "# krew plugin manifest of kubectl-buildkit " version ", rendered from plugin.yaml"
    print "# by scripts/release.sh."
    header = 1
  }
  header && /^#/ { next }
  { header = 0 }
  /^  - selector:/ { flush(); inblock = 1 }
  inblock && !/^    / && !/^  - selector:/ { flush(); inblock = 0 }
  {
    line = $0
    if (line ~ /^  version: /) line = "  version: " version
    if (inblock && line ~ /^    uri: /) {
      file = line; sub(/.*\//, "", file)
      if (match(file, /_[a-z0-9]+_[a-z0-9]+\.(tar\.gz|zip)$/)) {
        key = substr(file, RSTART + 1, RLENGTH - 1); sub(/\.(tar\.gz|zip)$/, "", key)
        ext = substr(file, RSTART + 1 + length(key) + 1)
      }
      line = "    uri: " url "/kubectl-buildkit_" version "_" key "." ext
    }
    if (inblock && line ~ /^    sha256: /) line = "    sha256: \"" ((key in sha) ? sha[key] : "") "\""
    if (inblock) block[++nblock] = line; else print line
  }
  END { flush() }
' "$root/plugin.yaml" >"$out/buildkit.yaml"

echo "release.sh: $out/buildkit.yaml for $version (${hashes# })" >&2
[ -z "$missing" ] || echo "release.sh: left out (--partial):$missing" >&2

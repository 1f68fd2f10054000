#!/usr/bin/env bash
# Build CalculiX ccx 2.20 with run-time UMAT loading (CALCULIX_EXTERNAL_BEHAVIOURS_SUPPORT) from
# Debian's own source package, once per machine, into
#     ${NEUMAT_CACHE:-$HOME/.cache/neumat}/ccx-2.20/{ccx, ccx_2.20.a, ccx_2.20.o}
# (outside git). A second run only prints the binary's path.
#
# Never edits /etc: the deb-src index is fetched with a private apt sources file and private
# list/cache folders inside a temporary build folder, which is removed at the end. The build
# happens in that temporary folder and the results are moved into the cache only when complete,
# so an interrupted earlier run leaves nothing that looks finished.
#
# Environment: NEUMAT_CACHE (cache root), CCX_JOBS (make -j, default 2).
set -euo pipefail

VER=2.20
CACHE_ROOT="${NEUMAT_CACHE:-$HOME/.cache/neumat}"
DEST="$CACHE_ROOT/ccx-$VER"
STAMP="$DEST/.complete"
JOBS="${CCX_JOBS:-2}"

if [ -f "$STAMP" ] && [ -x "$DEST/ccx" ] && [ -f "$DEST/ccx_$VER.a" ] && [ -f "$DEST/ccx_$VER.o" ]; then
  echo "$DEST/ccx"
  exit 0
fi

# --- build dependencies -----------------------------------------------------------------------
DEPS=(gfortran libarpack2-dev libspooles-dev liblapack-dev dpkg-dev make gcc)
missing=()
for p in "${DEPS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "build_ccx.sh: the CalculiX build needs these Debian packages: ${missing[*]}" >&2
    echo "Run as root:  apt-get install -y ${missing[*]}   (then run 'make ccx' again)" >&2
    exit 1
  fi
  echo "build_ccx.sh: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 \
    || { apt-get update -qq && apt-get install -y -qq "${missing[@]}"; }
fi

# --- temporary build folder (same file system as the cache, so the final move is a rename) -----
mkdir -p "$CACHE_ROOT"
# one build at a time per cache (parallel `make test` workers, several shells)
exec 9>"$CACHE_ROOT/.ccx-build.lock"
if command -v flock >/dev/null; then
  flock 9
  if [ -f "$STAMP" ] && [ -x "$DEST/ccx" ]; then echo "$DEST/ccx"; exit 0; fi   # built meanwhile
fi
rm -rf "$CACHE_ROOT"/.ccx-build.*/ 2>/dev/null || true   # leftovers of an interrupted run
WORK="$(mktemp -d "$CACHE_ROOT/.ccx-build.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM
t0=$(date +%s)
echo "build_ccx.sh: building CalculiX ccx $VER in $WORK (a few minutes on 2 cores)" >&2

# --- fetch Debian's source package with a private apt configuration ---------------------------
SYS_SOURCES=/etc/apt/sources.list.d/debian.sources
APTDIR="$WORK/apt"
mkdir -p "$APTDIR/lists/partial" "$APTDIR/cache/archives/partial"
if [ -f "$SYS_SOURCES" ]; then
  sed -e 's/^Types:.*/Types: deb-src/' "$SYS_SOURCES" > "$APTDIR/src.sources"
else
  # no deb822 file: derive deb-src lines from the classic sources.list
  grep -hE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
    | sed -e 's/^deb /deb-src /' > "$APTDIR/src.list" || true
  [ -s "$APTDIR/src.list" ] || { echo "build_ccx.sh: no apt sources found to derive deb-src from" >&2; exit 1; }
fi
SRCFILE="$APTDIR/src.sources"; [ -f "$SRCFILE" ] || SRCFILE="$APTDIR/src.list"
APT_OPTS=(-o "Dir::Etc::SourceList=$SRCFILE" -o "Dir::Etc::SourceParts=/dev/null"
          -o "Dir::State::Lists=$APTDIR/lists" -o "Dir::Cache=$APTDIR/cache"
          -o "Dir::Cache::archives=$APTDIR/cache/archives"
          -o "APT::Sandbox::User=root" -o "Debug::NoLocking=1")
apt-get "${APT_OPTS[@]}" -qq update
DEBVER=$(apt-cache "${APT_OPTS[@]}" showsrc calculix-ccx | sed -n 's/^Version: //p' | grep "^$VER-" | head -n1 || true)
[ -n "$DEBVER" ] || { echo "build_ccx.sh: Debian's sources have no calculix-ccx $VER (needs Debian 12 bookworm)" >&2; exit 1; }
( cd "$WORK" && apt-get "${APT_OPTS[@]}" -qq --download-only source "calculix-ccx=$DEBVER" )
dsc=$(ls "$WORK"/calculix-ccx_"$DEBVER".dsc)
# apt already checked the files against the signed Release/Sources index; dpkg-source's own
# signature check needs the uploader's key, which is usually not installed (a harmless warning)
dpkg-source -x "$dsc" "$WORK/pkg" > "$WORK/dpkg-source.log" 2>&1 \
  || { cat "$WORK/dpkg-source.log" >&2; echo "build_ccx.sh: dpkg-source -x failed" >&2; exit 1; }

SRC="$WORK/pkg/ccx_$VER/src"
[ -d "$SRC" ] || SRC="$(dirname "$(find "$WORK/pkg" -name "ccx_$VER.c" | head -n1)")"
[ -f "$SRC/ccx_$VER.c" ] || { echo "build_ccx.sh: ccx_$VER.c not found in the source package" >&2; exit 1; }

# --- build ---------------------------------------------------------------------------------------
CFLAGS_CCX='-Wall -O2 -I/usr/include/spooles -DARCH="Linux" -DSPOOLES -DARPACK -DMATRIXSTORAGE -DUSE_MT=1 -DCALCULIX_EXTERNAL_BEHAVIOURS_SUPPORT'
FFLAGS_CCX='-O2 -fallow-argument-mismatch'
LIBS_CCX='-lspooles -lpthread -larpack -llapack -lblas -lm -lc -ldl'
( cd "$SRC" && make -j"$JOBS" "ccx_$VER" CFLAGS="$CFLAGS_CCX" FFLAGS="$FFLAGS_CCX" LIBS="$LIBS_CCX" \
     > "$WORK/make.log" 2>&1 ) || { tail -n 40 "$WORK/make.log" >&2; echo "build_ccx.sh: make failed" >&2; exit 1; }
for f in "ccx_$VER" "ccx_$VER.a" "ccx_$VER.o"; do
  [ -f "$SRC/$f" ] || { echo "build_ccx.sh: build did not produce $f" >&2; exit 1; }
done

# --- install into the cache --------------------------------------------------------------------
OUTDIR="$WORK/out"
mkdir -p "$OUTDIR"
cp "$SRC/ccx_$VER" "$OUTDIR/ccx"
cp "$SRC/ccx_$VER.a" "$SRC/ccx_$VER.o" "$OUTDIR/"
printf '%s\n' "$CFLAGS_CCX" "$FFLAGS_CCX" "$LIBS_CCX" > "$OUTDIR/build-flags.txt"
"$OUTDIR/ccx" -v 2>/dev/null | head -n 3 > "$OUTDIR/version.txt" || true
date -u +%FT%TZ > "$OUTDIR/.complete"
rm -rf "$DEST"
mv "$OUTDIR" "$DEST"
echo "build_ccx.sh: built in $(( $(date +%s) - t0 )) s" >&2
echo "$DEST/ccx"

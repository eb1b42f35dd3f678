#!/bin/sh
# tests/embedded/static_size.sh STRIP LIB LIMIT: the minimal build's static library, stripped
# of debug information (strip -g, as a firmware build would link it), must stay under LIMIT
# bytes. Prints the size either way.
set -eu
strip=$1 lib=$2 limit=$3
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
cp "$lib" "$tmp"
"$strip" -g "$tmp"
size=$(wc -c < "$tmp" | tr -d ' ')
echo "libweft.a after strip -g: $size bytes ($(awk "BEGIN { printf \"%.2f\", $size / 1e6 }") MB), limit $limit bytes"
if [ "$size" -ge "$limit" ]; then
  echo "libweft.a is over the limit of the minimal build by $((size - limit)) bytes" >&2
  exit 1
fi

#!/usr/bin/env bash
# Builds and runs plugins/example's test as a plugin author outside this tree
# would: in a temporary directory, with only sdk/include on the include path,
# linked with the test kit archive (libperkhub_testkit.a) and the system's
# libraries. A core header reached from the SDK, the kit or the example would
# fail the compile here.
# Usage: out_of_tree.sh SOURCE_DIR BUILD_DIR [extra compiler flags...]
set -euo pipefail
src=$1 build=$2
shift 2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp "$src/plugins/example/example.c" "$src/plugins/example/test_example.c" "$tmp/"
cp -r "$src/sdk/include" "$tmp/sdk-include"
cd "$tmp"
cc -std=c11 -Wall -Wextra -Werror -D_GNU_SOURCE "$@" -I sdk-include \
    example.c test_example.c -o test_example \
    "$build/libperkhub_testkit.a" \
    $(pkg-config --libs criterion libcurl openssl) -ldl -lpthread
./test_example --jobs 1

#!/usr/bin/env bash
# The SDK as an author outside this tree gets it: `cmake --install --component sdk`
# into a temporary prefix, then, with nothing but pkg-config pointing there,
#   example     plugins/example (sources, suite spec, fixtures) copied to a temporary
#               folder, built and tested (its conformance suite included);
#   new-plugin  the installed perkhub-new-plugin writes a new adapter, whose Makefile
#               builds the .so and the test, which passes the suite on its first build.
# A core header reached from the SDK, the kit or an adapter fails the compile here.
# Usage: out_of_tree.sh SOURCE_DIR BUILD_DIR MODE [extra compiler flags...]
set -euo pipefail
src=$1 build=$2 mode=$3
shift 3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" --component sdk >/dev/null
pcdir=$(dirname "$(find "$tmp/prefix" -name perkhub-testkit.pc)")
export PKG_CONFIG_PATH=$pcdir${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
flags="-O1 -g $*"
case $mode in
example)
    mkdir "$tmp/adapter"
    cp -r "$src/plugins/example/example.c" "$src/plugins/example/test_example.c" \
        "$src/plugins/example/example_suite.h" "$src/plugins/example/fixtures" "$tmp/adapter/"
    cd "$tmp/adapter"
    # shellcheck disable=SC2046,SC2086
    cc -std=c11 -Wall -Wextra -Werror -D_GNU_SOURCE $flags -DFIXTURE_DIR="\"$tmp/adapter/fixtures\"" \
        example.c test_example.c -o test_example $(pkg-config --cflags --libs perkhub-testkit criterion)
    ./test_example --jobs 1
    ;;
new-plugin)
    "$tmp/prefix/bin/perkhub-new-plugin" --dir "$tmp" acme
    grep -q 'TODO(protocol):' "$tmp/acme/acme.c"
    make -s -C "$tmp/acme" check CFLAGS="$flags"
    test -f "$tmp/acme/acme.so"
    ;;
*)
    echo "out_of_tree.sh: unknown mode $mode" >&2
    exit 2
    ;;
esac

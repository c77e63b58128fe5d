#!/usr/bin/env bash
# The one list of the C files we own and keep formatted with the checked-in .clang-format:
# core/, sdk/ (include and testkit), plugins/, tools/ (perkctl, supsim), tests/ (unit, e2e, fuzz,
# fixtures, headers too) and bench/ (bench/peers too). Nothing under these folders is
# vendored; a file that must keep a hand layout says so with clang-format off/on around
# that part (sdk/include/perkhub/plugin.h: the capability bits).
#
#   tools/format.sh          format every file in place (make format)
#   tools/format.sh --check  change nothing; name every file that is not formatted and
#                            fail (make format-check, .ci/run)
#
# The list comes from git (tracked files and new ones not ignored), so build trees never
# count; outside a git checkout it falls back to find. Needs clang-format (tools/deps.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

mode=fix
case "${1:-}" in
"") ;;
--check) mode=check ;;
*)
    echo "usage: tools/format.sh [--check]" >&2
    exit 2
    ;;
esac

command -v clang-format >/dev/null || {
    echo "format: clang-format is not installed (tools/deps.sh installs it)" >&2
    exit 1
}

roots=(core sdk plugins tools tests bench)
files=()
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    specs=()
    for r in "${roots[@]}"; do specs+=("$r/*.c" "$r/*.h"); done
    while IFS= read -r f; do
        [ -f "$f" ] && files+=("$f") # listed but deleted in the work tree: skip
    done < <(git ls-files --cached --others --exclude-standard -- "${specs[@]}" | sort -u)
else
    while IFS= read -r f; do files+=("$f"); done \
        < <(find "${roots[@]}" -type f \( -name '*.c' -o -name '*.h' \) | sort)
fi
[ ${#files[@]} -gt 0 ] || {
    echo "format: no C files found under ${roots[*]}" >&2
    exit 1
}

if [ "$mode" = fix ]; then
    clang-format -i "${files[@]}"
    exit 0
fi

# One run over every file; its diagnostics ("FILE:LINE:COL: error: code should be
# clang-formatted") name the files.
bad=()
if ! out=$(clang-format --dry-run --Werror "${files[@]}" 2>&1); then
    while IFS= read -r f; do bad+=("$f"); done \
        < <(printf '%s\n' "$out" | sed -n 's/^\(.*\):[0-9]*:[0-9]*: error: .*/\1/p' | sort -u)
    [ ${#bad[@]} -gt 0 ] || {
        printf '%s\n' "$out" >&2
        exit 1
    }
fi
if [ ${#bad[@]} -gt 0 ]; then
    echo "format: ${#bad[@]} of ${#files[@]} files are not clang-formatted:" >&2
    printf '  %s\n' "${bad[@]}" >&2
    echo "format: run 'make format' (tools/format.sh), check the diff, commit" >&2
    exit 1
fi
echo "format: ${#files[@]} files clean"

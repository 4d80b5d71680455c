#!/usr/bin/env bash
# Proves check.sh bites: the positive samples pass, the negative one fails.
#   tools/ascend_typecheck/selftest.sh <asc-devkit dir> <asc-tools dir>
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ok=0
for f in "$here"/samples/*_ok.cpp; do
    "$here/check.sh" "$1" "$2" "$f" >/dev/null 2>&1 || { echo "selftest: $f should pass" >&2; ok=1; }
done
for f in "$here"/samples/*_bad_*.cpp; do
    if "$here/check.sh" "$1" "$2" "$f" >/dev/null 2>&1; then
        echo "selftest: $f should fail" >&2
        ok=1
    fi
done
[[ $ok == 0 ]] && echo "selftest: OK"
exit $ok

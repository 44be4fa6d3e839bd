#!/bin/sh
# Every PASSERELLE_* variable the code or the scripts read must be in the
# README's configuration table: a setting nobody can find does not exist.
root=${1:-.}
cd "$root" || exit 2
# Unit tests may set made-up variables of their own: only the code proper
# and the test harness count.
used=$( { grep -hoE '"PASSERELLE_[A-Z0-9_]+"' common/*.c services/*/*.c tools/*.c tests/*.c |
          tr -d '"'
          grep -hoE '\$\{?PASSERELLE_[A-Z0-9_]+' dev deploy 2>/dev/null | tr -d '${'
        } | sort -u)
missing=0
for name in $used; do
    if ! grep -q "^| \`$name\`" README.md; then
        echo "not in the README's configuration table: $name"
        missing=1
    fi
done
exit $missing

#!/bin/sh
# Makes the CURVE keys of a new installation into PASSERELLE_KEYS_DIR, when
# it has none: the server certificate, and one client key per name:party
# given as arguments (default: the operations key, admin:admin). An
# existing server certificate is left as it is, so running this again (the
# compose file's one-shot job at every start) changes nothing; rotating
# keys is described in deploy/README.md.
set -eu
keys=${PASSERELLE_KEYS_DIR:-/var/lib/passerelle/keys}
umask 077
if [ -f "$keys/server.key_secret" ]; then
    echo "passerelle-keys-init: $keys already has a server certificate"
else
    passerelle keygen --server
fi
[ "$#" -gt 0 ] || set -- admin:admin
for pair in "$@"; do
    name=${pair%%:*} party=${pair#*:}
    if [ -f "$keys/clients/$name.key_secret" ] || [ -f "$keys/authorized/$name.key" ]; then
        echo "passerelle-keys-init: key $name exists"
    else
        passerelle keygen --name "$name" --party "$party"
    fi
done

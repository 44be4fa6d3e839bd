#!/bin/sh
# Starts Redis with Passerelle's configuration (deploy/redis.conf) and the
# password of the file REDIS_PASSWORD_FILE names. The password is written
# to a file only redis can read and included from there, so it shows
# neither on the command line nor in the environment of the server.
set -eu
: "${REDIS_PASSWORD_FILE:=/run/secrets/redis_password}"
: "${REDIS_PORT:=6379}"
: "${REDIS_BIND:=0.0.0.0}"
if [ ! -s "$REDIS_PASSWORD_FILE" ]; then
    echo "passerelle-redis: no password in $REDIS_PASSWORD_FILE: refusing to start without one" >&2
    exit 1
fi
conf=$(mktemp /tmp/redis-XXXXXX.conf)
chmod 600 "$conf"
{
    echo "include /etc/passerelle/redis.conf"
    echo "dir /data"
    echo "bind $REDIS_BIND"
    echo "port $REDIS_PORT"
    # Reachable from the other containers only through the password.
    echo "protected-mode no"
    printf 'requirepass "%s"\n' "$(cat "$REDIS_PASSWORD_FILE")"
} >"$conf"
exec redis-server "$conf" "$@"

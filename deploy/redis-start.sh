#!/bin/sh
# Starts Redis with Passerelle's configuration (deploy/redis.conf) and the
# password of the file REDIS_PASSWORD_FILE names. The password is written
# to a file only redis can read and included from there, so it shows
# neither on the command line nor in the environment of the server.
#
#   passerelle-redis [redis-server arguments...]   the server
#   passerelle-redis --ping                         the health check: PING
#                                                   with that password
#
# Both read the password as the services do (common/config.c): the file
# without the line ends that close it, "\n" or "\r\n" alike (a file saved
# on Windows), so that all of them agree on it.
set -eu
: "${REDIS_PASSWORD_FILE:=/run/secrets/redis_password}"
: "${REDIS_PORT:=6379}"
: "${REDIS_BIND:=0.0.0.0}"
if [ ! -s "$REDIS_PASSWORD_FILE" ]; then
    echo "passerelle-redis: no password in $REDIS_PASSWORD_FILE: refusing to start without one" >&2
    exit 1
fi
cr=$(printf '\r')
nl='
'
# $(...) drops the final "\n"s only; a "\r" before them would stay.
password=$(cat "$REDIS_PASSWORD_FILE")
while :; do
    case $password in
    *"$cr" | *"$nl") password=${password%?} ;;
    *) break ;;
    esac
done
if [ -z "$password" ]; then
    echo "passerelle-redis: no password in $REDIS_PASSWORD_FILE: refusing to start without one" >&2
    exit 1
fi
# The configuration line quotes the password: a quote or a backslash would
# end or escape it, a line break would start a directive of its own.
case $password in
*'"'* | *'\'* | *"$cr"* | *"$nl"*)
    printf '%s %s %s\n' "passerelle-redis: the password in $REDIS_PASSWORD_FILE contains" \
        "a '\"', a '\\' or a line break, which the configuration cannot hold: make another" \
        "one (e.g. head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \\n')" >&2
    exit 1
    ;;
esac

if [ "${1:-}" = "--ping" ]; then
    REDISCLI_AUTH=$password redis-cli -p "$REDIS_PORT" ping | grep -q PONG
    exit
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
    printf 'requirepass "%s"\n' "$password"
} >"$conf"
exec redis-server "$conf" "$@"

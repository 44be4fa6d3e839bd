# Turns the README's tours (the ```sh blocks between "## A short tour" and
# the next "## " heading) into a shell script that runs them as written and
# checks each command: one followed by a "# error: STATUS" comment must fail
# with that status on stderr, every other one must succeed. The script
# exits with the number of commands that did not do what the README says.
#
#   awk -f tests/tour/readme-tour.awk README.md > tour.sh && sh tour.sh
function flush_command(    expect, quoted) {
    if (command == "")
        return
    expect = "ok"
    quoted = first_line
    gsub(/'/, "'\\''", quoted)
    printf "# README.md:%d\n", command_line
    if (pending_error != "") {
        expect = pending_error
        printf "{ %s\n} 2>\"$tour_err\"\n", command
    } else {
        printf "%s\n", command
    }
    printf "tour_check $? %s '%d: %s'\n", expect, command_line, quoted
    command = ""
    pending_error = ""
}
/^## A short tour/ { in_tour = 1; next }
in_tour && /^## / { in_tour = 0 }
!in_tour { next }
/^```sh/ { in_block = 1; next }
in_block && /^```/ { flush_command(); in_block = 0; next }
!in_block { next }
{
    line = $0
    if (heredoc != "") {
        command = command "\n" line
        if (line == heredoc)
            heredoc = ""
        next
    }
    if (continued) {
        command = command "\n" line
        continued = (line ~ /\\$/)
        next
    }
    if (line ~ /^[ \t]*#/) {
        # The first comment after a command may say it fails, and how.
        if (command != "" && !seen_comment && match(line, /^# error: [A-Z_]+/)) {
            pending_error = substr(line, 10, RLENGTH - 9)
        }
        seen_comment = 1
        next
    }
    if (line ~ /^[ \t]*$/)
        next
    flush_command()
    seen_comment = 0
    command = line
    first_line = line
    command_line = NR
    continued = (line ~ /\\$/)
    if (match(line, /<<-?'?[A-Za-z_]+'?/)) {
        heredoc = substr(line, RSTART, RLENGTH)
        sub(/^<<-?'?/, "", heredoc)
        sub(/'$/, "", heredoc)
    }
}
BEGIN {
    print "#!/bin/sh"
    print "# Generated from README.md by tests/tour/readme-tour.awk: do not edit."
    print "tour_failures=0 tour_commands=0"
    print "tour_err=$(mktemp)"
    print "tour_check() { # rc expected where"
    print "    tour_commands=$((tour_commands + 1))"
    print "    if [ \"$2\" = ok ]; then"
    print "        [ \"$1\" -eq 0 ] && return 0"
    print "        echo \"tour: FAILED (exit $1) at README.md:$3\" >&2"
    print "    else"
    print "        cat \"$tour_err\" >&2"
    print "        if [ \"$1\" -ne 0 ] && grep -q \"error: $2\" \"$tour_err\"; then return 0; fi"
    print "        echo \"tour: expected error $2, got exit $1, at README.md:$3\" >&2"
    print "    fi"
    print "    tour_failures=$((tour_failures + 1))"
    print "}"
}
END {
    flush_command()
    print "rm -f \"$tour_err\""
    print "echo \"tour: $tour_commands commands, $tour_failures not as README.md says\" >&2"
    print "exit $tour_failures"
}

"""What both overhead benchmarks need to count git calls: the subcommand of a git argv."""


def git_subcommand(argv: list[str]) -> str:
    """The git subcommand in ARGV, past `-C DIR` and `-c KEY=VALUE`."""
    i = 1
    while i < len(argv):
        if argv[i] in ("-C", "-c"):
            i += 2
        elif argv[i].startswith("-"):
            i += 1
        else:
            return argv[i]
    return "?"

"""The editable file of the `fastfunc` task: Levenshtein edit distance, as fast as you can make it.

edit_distance(a, b) is the least number of single-character insertions, deletions and
substitutions that turn a into b. bench.py checks it against its own reference on hundreds
of pairs (empty strings, non-ASCII text, lengths around 64, fresh random ones each run), then
times a batch of long pairs in a fresh process and reports the median wall time.

The baseline is the textbook dynamic program (Wagner-Fischer): a table of len(a)+1 rows by
len(b)+1 columns, every cell the cheapest of three neighbours. It is correct and slow:
O(len(a) * len(b)) Python-level steps. The two knobs below are honest, small wins; the large
ones need a different algorithm.
"""

# Strip the common prefix and suffix first: they never change the distance, and near-identical
# strings (the common case when comparing versions of a text) shrink to their differing middle.
TRIM_AFFIXES = False  # search: [False, True]
# "full" keeps the whole table; "two" keeps only the previous and the current row, which is
# all the recurrence reads (less memory, fewer allocations).
ROWS = "full"  # search: ["full", "two"]


def edit_distance(a: str, b: str) -> int:
    if TRIM_AFFIXES:
        start = 0
        while start < len(a) and start < len(b) and a[start] == b[start]:
            start += 1
        a, b = a[start:], b[start:]
        end = 0
        while end < len(a) and end < len(b) and a[-1 - end] == b[-1 - end]:
            end += 1
        if end:
            a, b = a[:-end], b[:-end]
    if ROWS == "two":
        return _two_rows(a, b)
    return _full_table(a, b)


def _full_table(a: str, b: str) -> int:
    # table[i][j] = distance between a[:i] and b[:j]
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a) + 1):
        table[i][0] = i
    for j in range(len(b) + 1):
        table[0][j] = j
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            table[i][j] = min(table[i - 1][j] + 1,  # delete a[i-1]
                              table[i][j - 1] + 1,  # insert b[j-1]
                              table[i - 1][j - 1] + cost)  # keep or substitute
    return table[len(a)][len(b)]


def _two_rows(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        current = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
        previous = current
    return previous[len(b)]

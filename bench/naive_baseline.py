"""The yardstick: a naive `line.split()` + dict loop summing inbound packets and bytes per source."""

import sys

totals: dict[str, list[int]] = {}
with open(sys.argv[1]) as capture:
    for line in capture:
        fields = line.split()
        if len(fields) != 14 or fields[13] != "OK":
            continue
        tally = totals.get(fields[3])
        if tally is None:
            totals[fields[3]] = [int(fields[8]), int(fields[9])]
        else:
            tally[0] += int(fields[8])
            tally[1] += int(fields[9])
print(len(totals))

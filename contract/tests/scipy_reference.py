"""Reference values for the gate's statistics, from SciPy: McNemar's exact test is the
two-sided binomial test on the discordant pairs. Reads "b c" lines on stdin, prints one
p-value per line (repr, full precision)."""
import sys

from scipy.stats import binomtest

for line in sys.stdin:
    b, c = (int(x) for x in line.split())
    n = b + c
    print(repr(1.0 if n == 0 else float(binomtest(b, n, 0.5, alternative="two-sided").pvalue)))

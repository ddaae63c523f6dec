"""`python -m partedit_bench.cli`."""

from partedit_bench.cli import main

raise SystemExit(main())

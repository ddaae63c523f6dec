from partedit_bench.cli import main

raise SystemExit(main())

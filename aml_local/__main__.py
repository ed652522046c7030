from aml_local.cli import main

raise SystemExit(main())

from floodgate.cli.main import main

raise SystemExit(main())

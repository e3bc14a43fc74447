from colabkit.cli import main

raise SystemExit(main())

from snapshotter.cli import main

raise SystemExit(main())

"""The command line: one `ppi-dist` command (`cli.main`) with a module per subcommand, each a
thin flag layer over the library, and one error boundary (`cli.boundary.run_tool`)."""

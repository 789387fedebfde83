from autobatch_cli.entry import main

main()

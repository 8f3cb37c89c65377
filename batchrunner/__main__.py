from batchrunner.cli.main import main

main()

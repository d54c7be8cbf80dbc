from methodhub.cli.app import main

main()

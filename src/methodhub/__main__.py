from methodhub.cli import main

main()

from runtime.frontends.cli import main

main()

from svqbench.cli import main

main()

from hrnet_fast.cli import main

main()

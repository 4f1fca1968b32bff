from netaware.lab.daemon import main

main()

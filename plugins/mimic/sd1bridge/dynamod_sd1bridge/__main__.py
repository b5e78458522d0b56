from dynamod_sd1bridge.daemon import main

main()

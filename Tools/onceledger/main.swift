print("onceledger")

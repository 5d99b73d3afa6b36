"""Federation: finding peer nodes on the LAN (discovery) and checking they are alive."""

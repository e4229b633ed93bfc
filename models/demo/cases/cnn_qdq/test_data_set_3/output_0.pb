
BlogitsJ(BOm¿<ùÑ¿snC¿	òãø¶s<¿ÿxµø®Yﬂøt·‘¿¶s<@§çôø
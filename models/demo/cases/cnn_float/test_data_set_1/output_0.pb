
BlogitsJ(NaJÀðæÀãDÁ¬ijÀÊ0˜@Œm/À²URÀZ•«¿LL>6@
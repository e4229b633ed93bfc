
BlogitsJ(¤©@‰ÜC@QòÁºœ§ÁÌz‰AÏ8Á 2AmqÀÆ GÁ&\üÁ

BlogitsJ(нR@mс?єњ§Б0ВоqєAл\‹БmqѕeЛ@vюaБыuЪБ
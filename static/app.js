// Flask Tour: small progressive enhancements. Everything works without JavaScript.
"use strict";

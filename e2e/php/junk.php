<?php
// A legacy page that writes a raw control byte into a cookie (binary data
// copied into a header): browsers refuse that cookie and show the page.
header("Set-Cookie: tracking=a\x01b");
setcookie('lang', 'en');
echo "A page with a junk header line\n";

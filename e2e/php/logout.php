<?php
// The classic mistake: "logging out" only tells the browser to forget its
// cookie. The session, and the user in it, lives on on the server, so
// anyone who copied the ID before stays logged in.
setcookie(session_name(), '', time() - 3600, '/');
header('Location: /index.php', true, 302);

<?php
// Deliberately vulnerable legacy page: the session ID may come from the URL
// or a form field (session.use_only_cookies=0) and is written into links by
// session.use_trans_sid=1. For the end-to-end suite only.
session_start();
// A preference cookie set the way legacy apps do: no flag at all.
setcookie('lang', 'en');
// A cookie a page script reads (the gateway config lists it as script-readable).
setcookie('prefs', 'compact');
$user = isset($_SESSION['user']) ? $_SESSION['user'] : 'anonymous';
?>
<!DOCTYPE html>
<html>
<head><title>Legacy PHP app</title></head>
<body>
<h1>Hello, <?php echo htmlspecialchars($user); ?></h1>
<?php if (isset($_GET['failed'])) echo "<p>Login failed</p>\n"; ?>
<ul>
  <li><a href="/whoami.php">Who am I</a></li>
  <li><a href="/xss.php?q=hello">Search</a></li>
  <li><a href="/upload.php">Upload</a></li>
  <li><a href="/logout.php">Log out</a></li>
</ul>
<form method="post" action="/login.php">
  <input name="user"> <input name="password" type="password">
  <input type="submit" value="Log in">
</form>
<form method="get" action="/xss.php">
  <input name="q"> <input type="submit" value="Search">
</form>
</body>
</html>

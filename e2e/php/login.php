<?php
// Login WITHOUT session_regenerate_id(): the ID the client brought (cookie,
// URL or POST field) survives the login. Session fixation by design.
session_start();
$users = array('alice' => 'wonderland', 'bob' => 'builder');
if ($_SERVER['REQUEST_METHOD'] === 'POST') {
    $u = isset($_POST['user']) ? $_POST['user'] : '';
    $p = isset($_POST['password']) ? $_POST['password'] : '';
    if (isset($users[$u]) && $users[$u] === $p) {
        $_SESSION['user'] = $u;
        // The legacy idiom: SID is "PHPSESSID=<id>" unless the ID came in a
        // cookie, so cookieless clients keep their session across the redirect.
        header('Location: /index.php' . (SID ? '?' . SID : ''), true, 302);
    } else {
        header('Location: /login.php?failed=1' . (SID ? '&' . SID : ''), true, 302);
    }
    exit;
}
?>
<!DOCTYPE html>
<html><body>
<?php if (isset($_GET['failed'])) echo "<p>Login failed</p>\n"; ?>
<form method="post" action="/login.php">
  <input name="user"> <input name="password" type="password">
  <input type="submit" value="Log in">
</form>
</body></html>

<?php
// Reflected XSS on purpose: q is echoed without escaping.
session_start();
$q = isset($_GET['q']) ? $_GET['q'] : '';
?>
<!DOCTYPE html>
<html><body>
<p>You searched for: <?php echo $q; ?></p>
<a href="/index.php">Home</a>
</body></html>

<?php
session_start();
header('Content-Type: text/plain');
if ($_SERVER['REQUEST_METHOD'] === 'POST') {
    if (isset($_FILES['file']) && $_FILES['file']['error'] === UPLOAD_ERR_OK) {
        $user = isset($_SESSION['user']) ? $_SESSION['user'] : 'anonymous';
        echo 'received ' . $_FILES['file']['size'] . " bytes from $user\n";
    } else {
        http_response_code(400);
        echo 'upload failed: ' . (isset($_FILES['file']) ? $_FILES['file']['error'] : 'no file') . "\n";
    }
    exit;
}
header('Content-Type: text/html');
?>
<!DOCTYPE html>
<html><body>
<form method="post" action="/upload.php" enctype="multipart/form-data">
  <input type="file" name="file"> <input type="submit" value="Upload">
</form>
</body></html>

<?php
session_start();
unset($_SESSION['user']);
header('Location: /index.php' . (SID ? '?' . SID : ''), true, 302);

<?php
session_start();
header('Content-Type: text/plain');
echo isset($_SESSION['user']) ? $_SESSION['user'] : 'anonymous';
echo "\n";
